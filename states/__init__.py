"""The pure domain: statecharts, clock rules, the working-day calendar and domain errors.

Nothing here touches a database, HTTP, Prefect or Jinja2; callers pass in what it needs.
"""
