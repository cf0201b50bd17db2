"""Language models (KO Table 6, KITINet Tables 1-2): token shards, their preparation, models.

``shards`` is the on-disk format of prepared token data (reader and writer), ``prepare`` streams
text data sets, tokenises and packs them into shards, ``sources`` builds the offline CPU-scale
text and tokenizers from pinned packages. This domain imports nothing from the text domain.
"""
