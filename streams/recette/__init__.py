"""Recette campaigns (spec §12): scenario model and loader, subset matching, reports.

The engine that runs scenarios on Kafka lives in `streams.recette.runner`; the modules here are
pure, so every rule of the campaign format is unit-tested without a broker.
"""
