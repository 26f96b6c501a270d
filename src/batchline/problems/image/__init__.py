"""The vision problems and the parts video reuses: image decoding, class scores, detector outputs."""
