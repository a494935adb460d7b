"""The marketplace: module entries from several sources, searched with facets."""
