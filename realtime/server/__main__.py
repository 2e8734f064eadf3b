"""`python -m realtime.server [APP:ATTRIBUTE] [uvicorn options]`: uvicorn with the app's options (`serve.py`)."""

import sys

from realtime.server.serve import main

main(sys.argv[1:])
