"""Where the network goes wrong, in pictures: ``xpnet inspect`` as a script.

Classifies the test split, prints how many images are misclassified, and writes the worst
mistakes, the confusion matrix and the first-layer weights into a folder:

    python scripts/inspect_predictions.py --weights sample_weight.pkl --out pictures/
"""

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["inspect", *sys.argv[1:]]))
