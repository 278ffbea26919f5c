"""``redcapfs serve webdav``: the mount's Tree as a WebDAV share (provider, status table, streams, command)."""
