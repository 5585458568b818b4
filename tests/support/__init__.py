"""Test-only helpers, one module per kind of test: `store` (RepoConfigs, views and rows for
the store's own tests), `e2e` (working copies of feature_repo/ driven through the real
`feast` CLI and `feast serve`), `topology` (ACL lines from the docs, round-trip counts, the
Feast workflow on any topology), `faults` (failure injection). Redis processes themselves
come from the `devsupport` package, which the demo and the benchmarks share."""
