"""nas: running searches (data, proxy training, search loop, results, CLI).

Ray is imported lazily inside the modules that need it so that importing
``search_space`` and ``convattn`` stays light.
"""
