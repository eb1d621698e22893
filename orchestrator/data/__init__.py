"""Where a trial's data comes from: the catalog, the field's label formats, one trial's
instances, and pretrained weights."""
