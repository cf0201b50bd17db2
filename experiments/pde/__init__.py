"""PDE benchmarks of KITINet (App. E-F): neural operators (``models``), data generators
(``generate``) and data-set files (``io``). Submodules are imported on use."""
