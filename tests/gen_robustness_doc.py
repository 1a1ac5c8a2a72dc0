"""Write docs/robustness.md from the cases in tests/test_robustness.py.

Run ``python tests/gen_robustness_doc.py`` after changing a case or an error message;
``test_robustness_doc_is_up_to_date`` fails until you do.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_robustness import DOC, render_doc  # noqa: E402

if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render_doc())
    print(f"wrote {DOC}")
