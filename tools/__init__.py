"""Test tooling outside the product (issue 18 item 6): the connector fixture runner and a local fake Shopify.

Not installed with the product (pyproject's package list names core, edge, connectors and gateway only), and no
product package imports it (`make lint`'s import contracts). Tests and operators run it from a checkout.
"""
