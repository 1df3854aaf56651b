"""Draw the activation functions (step, sigmoid, ReLU...): ``xpnet plot-activations`` as a script.

python scripts/plot_activations.py --out docs/images/activations.png --force
"""

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["plot-activations", *sys.argv[1:]]))
