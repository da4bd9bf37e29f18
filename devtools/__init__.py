"""Tools for developers and benchmarks, not part of the product: fake data for
`flask leads generate` and bench/."""
