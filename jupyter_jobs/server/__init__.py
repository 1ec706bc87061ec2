"""The Jupyter server extension: REST API, events and the consumer inside the Jupyter server.

`JobsApp` (app.py) is the extension; `jupyter_jobs._jupyter_server_extension_points` names it.
"""
