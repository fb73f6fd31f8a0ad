"""Codecs: learned and traditional, all behind one protocol (:class:`liclab.codecs.base.Codec`)."""
