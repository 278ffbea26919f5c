"""The pieces behind :class:`redcapfs.tree.Tree`, one kind of state each (see tree.py for the map and the locks)."""
