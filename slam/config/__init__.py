"""Configuration: the SLAM system's schema (:mod:`.schema`) and the generic loader of YAML files and
``section.field=value`` overrides for any dataclass tree (:mod:`.loader`)."""
