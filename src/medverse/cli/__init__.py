"""The medverse command line: thin parsers over public functions."""
