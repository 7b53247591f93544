/**
 * A small regression network for the rows of tabular-regression/houses.csv (8 numeric features → price),
 * with its loss and a metric:
 *
 *   hwa train --model examples/tabular-regression/net.js --dataset examples/tabular-regression/data.js \
 *     --optimizer adam --lr 0.01 --workers 2 --val-fraction 0.2
 */
export default function model(tf) {
  let seed = 11;
  const init = () => tf.initializers.glorotUniform({ seed: seed++ });
  return tf.sequential({
    name: 'house_prices',
    layers: [
      tf.layers.dense({ inputShape: [8], units: 32, activation: 'relu', kernelInitializer: init() }),
      tf.layers.dense({ units: 16, activation: 'relu', kernelInitializer: init() }),
      tf.layers.dense({ units: 1, kernelInitializer: init() }),
    ],
  });
}

/** Mean squared error on standardized prices. */
export const loss = 'mse';

/** Mean absolute error, reported at every evaluation (one value per example; hwa averages over the set). */
export const metrics = {
  mae: (yTrue, yPred) => yTrue.sub(yPred).abs().mean(1),
};
