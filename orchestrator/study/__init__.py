"""What a study is: experiments and their typed axes, scales, and every trial as one frozen
job (:mod:`.trials` builds a trial's config), plus how a stage hands its checkpoint on."""
