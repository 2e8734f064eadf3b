"""ASGI entry point of the reference deployment: `python -m project.serve` (uvicorn), daphne and `runserver`.

The three lines of INTEGRATION.md section 3, plus the development-key guard: without a
SECRET_KEY of its own this deployment serves loopback only (project/devkey.py).
"""

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_application = get_asgi_application()

from project import devkey  # noqa: E402
from realtime.asgi import realtime_application  # noqa: E402

devkey.check_serving(sys.argv)
application = devkey.DevelopmentKeyGuard(realtime_application(django_application))
