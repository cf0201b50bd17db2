"""Language models (KITINet Tables 1-2, KO Table 6): packed token data, GPT-2 / Qwen2 builders."""
