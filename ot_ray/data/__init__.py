"""Reading the corpora and task data, local files first, with errors that name file and line."""
