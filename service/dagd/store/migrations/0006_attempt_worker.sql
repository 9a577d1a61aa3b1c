-- Where an attempt ran when not on this machine: the address of the Dask worker that
-- ran it (executor="dask"); NULL for an attempt run here (its pid says where).

ALTER TABLE attempt ADD COLUMN worker TEXT;
