"""Layer 6: glue for the servers that run the app: daphne, uvicorn (bounded), `runserver`, log filters."""
