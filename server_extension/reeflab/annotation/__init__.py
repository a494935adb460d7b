"""Annotation: labelling projects over the user's images in their own Label Studio, pre-annotated by modules."""
