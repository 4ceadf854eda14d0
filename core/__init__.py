"""Shared infrastructure of the gateway and the workers: settings, database, queue, start-up.

Imports neither `service` nor `workers`, so both can import it.
"""
