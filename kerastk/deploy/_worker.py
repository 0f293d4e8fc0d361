"""Subprocess entry point: export a .keras file under the backend given by KERAS_BACKEND."""
import sys

from kerastk.deploy.export import main_worker

if __name__ == "__main__":
    sys.exit(main_worker())
