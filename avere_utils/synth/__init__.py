"""The synthetic audiovisual emotion world (the tiny profile's data), written in each real dataset's layout."""
from avere_utils.synth.spec import ClipSpec, WorldConfig, cue_record
from avere_utils.synth.world import WorldSummary, existing_world, generate_world

__all__ = ["ClipSpec", "WorldConfig", "WorldSummary", "cue_record", "existing_world", "generate_world"]
