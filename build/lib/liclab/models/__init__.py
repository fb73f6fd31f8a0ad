"""Learned image codecs, one module per paper family; the codec protocol is in ``base``."""
