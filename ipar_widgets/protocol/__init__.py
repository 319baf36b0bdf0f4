"""What every process of a cluster shares: the wire format (:mod:`.wire`), the routing
conventions around it (:mod:`.routing`), pickling (:mod:`.serialize`) and shared memory
between processes of one host (:mod:`.sharedmem`).  Nothing here imports the rest of
ipar_widgets but :mod:`ipar_widgets.error`."""
