"""How the process runs: speed presets and CPU features (:mod:`.speed`), the allocator (:mod:`.malloc_tuning`),
memory-mapped weights (:mod:`.mapped_weights`), quiet third-party logging (:mod:`.quiet`), torchrun worker exit
(:mod:`.worker_exit`) and the environment switches (:mod:`.switches`)."""
