# Type stubs for the compiled WordPiece core (_wordpiece.pyx).
# Signatures only; policy and documentation live in wordpiece.py.

from typing import Dict, List, Optional, Sequence, Tuple

def code_point_class(cp: int) -> int: ...

class WordPieceCore:
    def __init__(
        self,
        vocab: Dict[str, int],
        mapping: Dict[int, Sequence[int]],
        unk_id: int,
        max_chars: int = 100,
        prefix: str = "##",
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
        cache_slots: int = 16,
    ) -> None: ...
    def __len__(self) -> int: ...
    def encode(
        self, text: str, offsets: bool = False, base: int = 0
    ) -> Tuple[List[int], Optional[List[Tuple[int, int]]]]: ...
    def encode_batch(
        self, texts: List[str], first: int = -1, last: int = -1, max_tokens: int = -1
    ) -> List[List[int]]: ...
    def clear_cache(self) -> None: ...
    def cache_size(self) -> Tuple[int, int]: ...
