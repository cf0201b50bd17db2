"""Language models: training data, models and evaluation of KITINet Tables 1-2 and KO Table 6."""
