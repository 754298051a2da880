"""Studies: upload (files, zips, NIfTI), validation, ingest into the archive, listing, deletion."""
