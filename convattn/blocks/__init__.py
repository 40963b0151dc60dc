"""Block families; importing a module registers its blocks.

One family per file. Each module is imported below, one line each.
"""
