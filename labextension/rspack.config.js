// Merged into @jupyter/builder's rspack configuration (package.json "webpackConfig").
// Module and chunk ids numbered in order, instead of hashed from paths, make the build
// byte-identical in every checkout folder, so check_prebuilt.py can compare it exactly.
module.exports = {
  optimization: { moduleIds: 'natural', chunkIds: 'natural' }
};
