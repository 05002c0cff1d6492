"""How the process runs: speed presets and CPU features (:mod:`.speed`), the allocator (:mod:`.malloc_tuning`),
checkpoints read into memory instead of memory-mapped (:mod:`.mapped_weights`), quiet third-party logging
(:mod:`.quiet`), torchrun worker exit (:mod:`.worker_exit`), on/off environment switches (:mod:`.switches`), the
files shipped with the package (:mod:`.resources`) and the opt-in timing hook (:mod:`.stage_timer`)."""
