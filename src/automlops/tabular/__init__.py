"""Reading tabular data: the CSV reader, and the schema document written beside the splits."""
