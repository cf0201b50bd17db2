"""Text classification (KO Table 3, KITINet Table 5): transformers sequence classifiers on data sets
described by their columns (IMDB, SNLI, Snips, or local csv/json/parquet files)."""
