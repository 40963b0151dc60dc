"""search_space: what an architecture is (spec, graph, builder, cost, zoo) and the
set of architectures a search may explore."""
