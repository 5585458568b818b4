"""Development and test support, shared by the tests, the demo and the benchmarks.

Not part of the installed package: it finds or builds a `redis-server` >= 7.4, starts
throwaway servers and topologies on loopback, and makes working copies of the sample
`feature_repo/`. `python -m devsupport ensure` is the set-up step of `make test`/`make demo`.
"""
