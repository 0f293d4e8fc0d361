"""kerastk's ground floor: numpy and the standard library only, imported by every floor above.

``checks`` (argument checks), ``boxes`` (box arithmetic, detection decoding and NMS), ``rows`` (row slicing of
arrays and lists of arrays), ``files`` (hashes, JSON, atomic writes), ``rundir`` (the run folder's files),
``card`` (the model card), ``timing`` (interleaved latency timing), ``errors`` (kerastk's error classes).
Nothing here imports keras, a backend or another kerastk floor (tests/test_architecture.py keeps it so).
"""
