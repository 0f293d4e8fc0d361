"""kerastk's ground floor: numpy and the standard library only, imported by every floor above.

``checks`` (argument checks), ``boxes`` (box arithmetic, detection decoding and NMS), ``rows`` (row slicing of
arrays and lists of arrays), ``files`` (hashes, JSON, atomic writes), ``rundir`` (the run folder's files),
``preprocessing`` (the recorded preprocessing, applied), ``card`` (the model card), ``errors`` (kerastk's error
classes, and the first line of an error's message).
Nothing here imports keras, a backend or another kerastk floor (tests/test_architecture.py keeps it so).
"""
