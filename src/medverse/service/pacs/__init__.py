"""The PACS link: a DICOMweb client, study import (QIDO/WADO) and SEG push (STOW)."""
