"""Measuring, for the benchmark tools and the tests; each module has one job:

- :mod:`.child`: one measurement per fresh process, its result read back as a value (failures too);
- :mod:`.timing`, :mod:`.memory`, :mod:`.complexity`: wall time, peak RSS, parameters and MACs;
- :mod:`.numeric_agreement` (closeness, the one mask IoU), :mod:`.boxes` (random box prompts);
- :mod:`.pipeline_paths`, :mod:`.pipeline_measure`, :mod:`.pipeline_report`: the end-to-end pipeline benchmark,
  timing the real ``GroundedSAM`` through its stage hook;
- :mod:`.sam_latency`: RepViT-SAM's encoder and decoder latency table; :mod:`.student_models`,
  :mod:`.student_report`: the student benchmark; :mod:`.backbone_benchmark`, :mod:`.classification`.

The grounded pipeline never imports this package."""
