"""Starting, finding and stopping clusters: the ``Cluster`` API and the ``ipar`` command."""
