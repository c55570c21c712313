# Type stubs for the compiled SentencePiece-style BPE core (_spm.pyx).
# Signatures only; policy and documentation live in spm.py.

from typing import Dict, List, Sequence, Tuple

class SPMCore:
    def __init__(
        self,
        n_tokens: int,
        chars: Dict[int, int],
        byte_ids: List[int],
        merges: Sequence[Tuple[int, int, int]],
        unk_id: int = -1,
        fuse_unk: bool = True,
        split_mode: int = 0,
        cache_slots: int = 16,
    ) -> None: ...
    def __len__(self) -> int: ...
    def encode(self, text: str) -> List[int]: ...
    def merge(self, word: str) -> List[int]: ...
    def clear_cache(self) -> None: ...
    def cache_size(self) -> Tuple[int, int]: ...
