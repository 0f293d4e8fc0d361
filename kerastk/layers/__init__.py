"""Curriculum layers Keras lacks (one file per idea). Each is registered serializable."""
