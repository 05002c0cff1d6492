"""Jobs over many files: resumable batch labelling of folders with the grounded pipeline."""
