import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1]
REPO = MODELS.parent
if str(MODELS) not in sys.path:
    sys.path.insert(0, str(MODELS))
