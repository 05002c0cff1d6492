"""Measuring, for the benchmark tools and the tests: timing (:mod:`.timing`), parameters and MACs
(:mod:`.complexity`), numeric agreement (:mod:`.numeric_agreement`), backbone and classification benchmarks.

The grounded pipeline never imports this package."""
